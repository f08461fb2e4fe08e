// tokenizer_binding.h — the addon functions of `ko-train tokenizer extend` (tokenizer_binding.cpp).
#pragma once
#include <napi.h>

namespace kob {
void registerTokenizer(Napi::Env env, Napi::Object exports);  // countHangulWords, trainUnigram
}  // namespace kob
