"""The workstation-side commands (torch, Python 3.10+), in workflow order; the device's are in runtime/commands.
This list is read by the command line on the device too, so this file alone is Python 3.8."""

from __future__ import annotations

WORKSTATION: dict[str, str] = {
    "demo": "oatdeploy.commands.demo:demo",
    "train": "oatdeploy.commands.train:train",
    "import-reference": "oatdeploy.commands.import_reference:import_reference",
    "eval": "oatdeploy.commands.evaluate:evaluate",
    "export": "oatdeploy.commands.export:export",
}
