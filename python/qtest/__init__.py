# SPDX-License-Identifier: GPL-2.0-or-later
# qtest-os: drive qemu-slim or QEMU over QMP and the qtest protocol, with PCI helpers and
# a small driver model.  See README.md in this folder.

from .driver import PciDriver, bind, bind_all, register, registered
from .edu import EduDriver
from .errors import (DeviceError, EmulatorError, EmulatorExited, EmulatorTimeout,
                     ProtocolError, QMPError, QtestCommandError, QtestOSError)
from .machine import Machine, default_binary
from .memory import GuestAllocator, Memory
from .pci import Cf8Accessor, EcamAccessor, PciBus, PciDevice
from .profiles import PROFILES, make_profile
from .protocol import QtestClient
from .qmp import QMPClient

__version__ = "0.1.0"
