// The NCCL communicator: the collectives of comm::Communicator on device buffers of one CUDA
// device per rank. Built only when CMake finds CUDA and NCCL (SOLO_HAVE_NCCL).
//
// It is bootstrapped over a host communicator (MPI in a job, local for one rank): rank 0
// makes the NCCL id and `bootstrap.broadcast` hands it to every rank. Collectives run on a
// stream of its own and are ordered with the compute stream by events, never by waiting on
// the host: each one waits for the work queued on the compute stream so far, and work queued
// on the compute stream afterwards waits for it. Calls therefore return before the data has
// moved; read results through the compute stream (or after barrier()). split() (ncclCommSplit)
// gives each group a communicator with its own stream and events on the same device, following
// the same compute stream; like this one, it must be destroyed before that stream.
#pragma once
#include <memory>

#include "solo/comm/communicator.h"

namespace solo::comm {

// Every rank of `bootstrap` calls this together (it is collective). `device` is the CUDA
// device index this rank's buffers live on; `compute_stream` (a cudaStream_t) is the stream
// whose work the collectives must follow and precede. Ranks need distinct GPUs.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, int device,
                                                     void* compute_stream);

// True when this build has NCCL and the library answers (it always does once linked; tests
// and callers use it to say why a device collective is unavailable).
bool nccl_available();

}  // namespace solo::comm
