{
  "targets": [
    {
      "target_name": "r3mes_pow",
      "sources": ["r3mes_pow.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O3", "-fvisibility=hidden"],
      "cflags!": ["-O2"],
      "xcode_settings": { "OTHER_CFLAGS": ["-O3"] }
    }
  ]
}
