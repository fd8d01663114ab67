#pragma once

// NG_ASAN is 1 in AddressSanitizer builds: g++ says so with
// __SANITIZE_ADDRESS__, clang only through __has_feature.
#if defined(__SANITIZE_ADDRESS__)
#define NG_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NG_ASAN 1
#endif
#endif
#ifndef NG_ASAN
#define NG_ASAN 0
#endif
