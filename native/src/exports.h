// Registration hooks, one per concern (.cc); addon.cc calls each once from Init.
#pragma once

#include <napi.h>

namespace tproxy {

void RegisterListener(Napi::Env env, Napi::Object exports);
void RegisterConnect(Napi::Env env, Napi::Object exports);
void RegisterSockopt(Napi::Env env, Napi::Object exports);
void RegisterPeercred(Napi::Env env, Napi::Object exports);
void RegisterSockdiag(Napi::Env env, Napi::Object exports);

}  // namespace tproxy
