# SPDX-License-Identifier: GPL-2.0-or-later
# Unit tests of qtest-os: make the package importable from the source tree.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
