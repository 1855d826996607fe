# SPDX-License-Identifier: GPL-2.0-or-later
# The driver model: a PCI driver class declares the (vendor, device) ids it handles;
# binding walks the bus and instantiates the first registered driver that matches.

from .errors import DeviceError

_registry = []


def register(cls):
    """Class decorator: make ``cls`` (a PciDriver) available to bind()."""
    if not cls.ids:
        raise ValueError("driver %s declares no ids" % cls.__name__)
    _registry.append(cls)
    return cls


def registered():
    return list(_registry)


class PciDriver:
    """Base of PCI drivers.  ``ids``: [(vendor, device)]; probe() runs at bind time
    (map BARs, enable decoding) and raises DeviceError if the device is unusable."""

    ids = ()
    name = None

    def __init__(self, dev):
        self.dev = dev
        self.machine = dev.bus.machine
        self.probe()

    @classmethod
    def matches(cls, dev):
        return (dev.vendor_id, dev.device_id) in cls.ids

    def probe(self):
        pass

    def __repr__(self):
        return "<%s on %s>" % (type(self).__name__, self.dev)


def bind_all(bus, drivers=None):
    """A driver instance for every device on ``bus`` that a driver claims."""
    out = []
    for dev in bus.devices():
        for cls in drivers or _registry:
            if cls.matches(dev):
                out.append(cls(dev))
                break
    return out


def bind(bus, driver):
    """Bind ``driver`` (a class) to the first matching device, or raise DeviceError."""
    for dev in bus.devices():
        if driver.matches(dev):
            return driver(dev)
    raise DeviceError("no device for driver %s (ids %s) on the bus; found %s"
                      % (driver.__name__,
                         ", ".join("%04x:%04x" % i for i in driver.ids),
                         ", ".join("%s %04x:%04x" % (d, d.vendor_id, d.device_id)
                                   for d in bus.devices()) or "nothing"))
