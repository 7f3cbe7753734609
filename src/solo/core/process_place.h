// This process's place among the processes of the virtual accelerator: rank r of n. The
// Session sets it when it joins a job; a program never reads it. Library code that acts once
// per job (writing a checkpoint) or per rank (reading this rank's rows of a global batch)
// asks for it, so the user program stays a single-device program. It is the identity of the
// process, like MPI's rank, not parallel state: plans and meshes are still passed explicitly.
#pragma once

namespace solo {

struct ProcessPlace {
  int rank = 0;
  int ranks = 1;
  bool writes_files() const { return rank == 0; }  // the process that writes shared files
};

const ProcessPlace& process_place();
void set_process_place(const ProcessPlace& place);  // throws unless 0 <= rank < ranks

}  // namespace solo
