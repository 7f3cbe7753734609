// Named points where a test kills the process (SOLO_TEST_KILL_AT=<name> raises SIGKILL there),
// so that crash safety is tested at each step of a multi-step write instead of assumed.
#pragma once

namespace solo {

// Raises SIGKILL when the environment variable SOLO_TEST_KILL_AT equals `name`; otherwise
// does nothing. Costs one getenv: meant for steps that write files, not for hot loops.
void fault_point(const char* name);

}  // namespace solo
