"""The workstation-side commands (torch, Python 3.10+), in workflow order; the device's are in runtime/commands."""

WORKSTATION: dict[str, str] = {
    "demo": "oatdeploy.commands.demo:demo",
    "train": "oatdeploy.commands.train:train",
    "import-reference": "oatdeploy.commands.import_reference:import_reference",
    "eval": "oatdeploy.commands.evaluate:evaluate",
    "export": "oatdeploy.commands.export:export",
}
