#include "solo/ir/ops.h"

namespace solo::ir {

}  // namespace solo::ir
