#include "solo/runtime/executor.h"
