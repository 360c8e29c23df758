# The XFRM netlink addon (ipsec/xfrm-msg.ts encodes and decodes every message; this only moves
# bytes). Built offline against the Node headers of the installed nodejs package
# (scripts/build-addons.sh passes --nodedir=/usr when /usr/include/node exists).
{
  "targets": [
    {
      "target_name": "sealnet_xfrm",
      "sources": ["src/xfrm_netlink.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wshadow", "-Wconversion", "-Wno-sign-conversion", "-Werror", "-fvisibility=hidden", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong"],
      "ldflags": ["-Wl,-z,relro,-z,now"]
    }
  ]
}
