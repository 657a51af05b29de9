"""Only the build hook that setup.cfg cannot express: generate the manual pages from the click commands
(click-man, fsdaxctl/commands/manpage.py) while building, ship them in the package (fsdaxctl/man/) and install them as
data files into PREFIX/share/man/man1, where `man fsdaxctl` finds them. Metadata stays in setup.cfg."""

import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class build_py_with_man(build_py):
    def run(self):
        super().run()
        sys.path.insert(0, HERE)  # the package being built, not an installed one
        try:
            from fsdaxctl.commands.manpage import write_pages

            out = os.path.join(HERE, "build", "man")
            pages = write_pages(out)
        except Exception as e:  # no click-man in a non-isolated build: the package still works, without pages
            self.warn(f"manual pages not generated: {type(e).__name__}: {e}")
            return
        finally:
            sys.path.remove(HERE)
        # An editable install imports the package from this tree: the pages go beside it (git ignores them).
        lib = HERE if getattr(self, "editable_mode", False) else self.build_lib
        self.mkpath(os.path.join(lib, "fsdaxctl", "man"))
        for page in pages:
            self.copy_file(page, os.path.join(lib, "fsdaxctl", "man", os.path.basename(page)))
        rel = [os.path.relpath(p, HERE) for p in pages]
        self.distribution.data_files = [d for d in (self.distribution.data_files or [])
                                        if d[0] != "share/man/man1"] + [("share/man/man1", rel)]


setup(cmdclass={"build_py": build_py_with_man})
