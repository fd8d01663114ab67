#pragma once
// A driver domain that crashes (bad pointer, bus error, abort) hangs up on
// its frontends from the signal handler, before the kernel tears the
// process down: the frontends switch in microseconds instead of waiting the
// milliseconds a dying process takes to release its memory and sockets.
#include <memory>

namespace ng::driver {

// Installs the handlers; the returned alternate signal stack must stay alive
// while they are installed (a stack overflow must still reach the handler).
std::unique_ptr<char[]> hang_up_on_crash();

}  // namespace ng::driver
