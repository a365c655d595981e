// Owns the module's entry point: registers each concern's exports and nothing else. The addon
// keeps no state of its own (in-flight connects own themselves), so there is no instance data.
// Elsewhere than Linux the module builds empty (so `npm install` succeeds on a developer's Mac)
// and lib/index.ts reports why nothing is there.
#include <napi.h>

#include "exports.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#if defined(__linux__)
  tproxy::RegisterListener(env, exports);
  tproxy::RegisterConnect(env, exports);
  tproxy::RegisterSockopt(env, exports);
  tproxy::RegisterPeercred(env, exports);
  tproxy::RegisterSockdiag(env, exports);
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(tproxy_native, Init)
