{
  "targets": [
    {
      "target_name": "sealnet_bpf",
      "sources": ["src/sealnet_bpf.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2"]
    }
  ]
}
