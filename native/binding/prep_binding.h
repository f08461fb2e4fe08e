// prep_binding.h — the data-pipeline functions of the addon, one registration function per file.
#pragma once
#include <napi.h>

namespace kob {
void registerRules(Napi::Env env, Napi::Object exports);    // rules_binding.cpp
void registerDedup(Napi::Env env, Napi::Object exports);    // dedup_binding.cpp
void registerNgram(Napi::Env env, Napi::Object exports);    // ngram_binding.cpp
}  // namespace kob
