// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Wireshark 4.0 plugin entry points: the version symbols epan checks before loading,
 * and plugin_register(), which hands our protocol's register/handoff pair to epan.
 */
#define WS_BUILD_DLL
#include <wireshark.h>
#include <epan/proto.h>
#include <ws_symbol_export.h>
#include <ws_version.h>

#include "packet-vsockmon.h"

WS_DLL_PUBLIC_DEF const gchar plugin_version[] = "1.0.0";
WS_DLL_PUBLIC_DEF const int plugin_want_major = WIRESHARK_VERSION_MAJOR;
WS_DLL_PUBLIC_DEF const int plugin_want_minor = WIRESHARK_VERSION_MINOR;

WS_DLL_PUBLIC void plugin_register(void);

void plugin_register(void)
{
	static proto_plugin plug;

	plug.register_protoinfo = proto_register_vsockmon;
	plug.register_handoff = proto_reg_handoff_vsockmon;
	proto_register_plugin(&plug);
}
