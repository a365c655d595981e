{
  "targets": [{
    "target_name": "tproxy_native",
    "sources": ["src/addon.cc"],
    "conditions": [
      ["OS=='linux'", {
        "sources": ["src/listener.cc", "src/connect.cc", "src/sockopt.cc", "src/peercred.cc", "src/sockdiag.cc"]
      }]
    ],
    "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
    "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
    "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"],
    "defines": ["NAPI_VERSION=8"]
  }]
}
