"""Build hook: copy the shipped specs and model into the wheel, and build the optional
C fingering search.

``hardware_specs/`` and ``models/`` stay the one source in the repository; a built
package carries a copy under ``robo_player/_shipped/`` (``robo_player/resources.py``
finds either). Editable installs read the checkout directly.

``robo_player.planner._fingering_c`` is the guitar planner's fingering search in C (the
same plans as the Python one, faster: docs/guitar.md). It is optional: where no C
compiler is found the build goes on without it and ``fingering.search`` runs in Python.
``-ffp-contract=off``: no fused multiply-add, so its sums round as Python's do.
"""

import hashlib
import shutil
from pathlib import Path

from setuptools import Extension, setup
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


FINGERING_C_SRC = "robo_player/planner/_fingering_c.c"
FINGERING_C = Extension(
    "robo_player.planner._fingering_c",
    sources=[FINGERING_C_SRC],
    extra_compile_args=["-O2", "-ffp-contract=off"],
    # the source's hash, built in: fingering.py loads the module only while they agree
    # (an editable install whose .c changed since its build runs the Python search)
    define_macros=[("SOURCE_SHA256", f'"{hashlib.sha256((HERE / FINGERING_C_SRC).read_bytes()).hexdigest()}"')],
    optional=True,
)

setup(cmdclass={"build_py": BuildPyWithShipped}, ext_modules=[FINGERING_C])
