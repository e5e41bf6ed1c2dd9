"""Build hook: copy the shipped specs and model into the wheel.

``hardware_specs/`` and ``models/`` stay the one source in the repository; a built
package carries a copy under ``robo_player/_shipped/`` (``robo_player/resources.py``
finds either). Editable installs read the checkout directly.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = {
    # folder -> files copied into robo_player/_shipped/<folder>/
    "hardware_specs": ["*.yaml", "schema.json", "README.md"],
    # the shipped models only (5.4 MB + 3.1 MB); the comparison checkpoints stay in the repository
    "models": ["performance.pt", "render.pt", "MODEL_CARD.md"],
}


class BuildPyWithShipped(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for folder, patterns in SHIPPED.items():
            dest = Path(self.build_lib) / "robo_player" / "_shipped" / folder
            dest.mkdir(parents=True, exist_ok=True)
            for pattern in patterns:
                for src in sorted((HERE / folder).glob(pattern)):
                    shutil.copy2(src, dest / src.name)


setup(cmdclass={"build_py": BuildPyWithShipped})
