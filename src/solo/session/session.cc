#include "solo/session/session.h"

#include "solo/core/process_place.h"
#include "solo/tensor/tensor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "solo/core/error.h"
#include "solo/session/launch.h"

#if __has_include("solo/cluster/jobs.h")
#include "solo/cluster/jobs.h"
#define SOLO_HAVE_JOB_RECORDS 1
#endif

namespace fs = std::filesystem;

namespace solo {

namespace {

void info(const std::string& line) {
  std::fprintf(stderr, "[info] %s\n", line.c_str());
}

std::string plural(int n, const char* word) {
  return detail::concat(n, " ", word, n == 1 ? "" : "s");
}

std::string new_job_id() {
  return detail::concat(::getpid(), "-", static_cast<long long>(std::time(nullptr)));
}

std::string host_label(const cluster::Host& h) {
  return h.address.empty() ? h.name : h.address;
}

void log_request(const cluster::Inventory& inv, const cluster::Flavor& f) {
  const auto placement = inv.placement(f);
  info(detail::concat("Requesting resources for the virtual accelerator (flavor ", f.name, ": ",
                      plural(f.devices, "device"), " on ",
                      plural(static_cast<int>(placement.size()), "host"), ")..."));
}

// A temporary directory for the hostfile; removed explicitly because the launching process
// leaves through std::exit.
void write_hostfile(const std::string& path, const cluster::Inventory& inv,
                    const cluster::Flavor& f) {
  std::ofstream out(path);
  for (const auto& [host, ranks] : inv.placement(f))
    out << host_label(host) << " slots=" << ranks << "\n";
  out.close();
  SOLO_CHECK(out.good(), "cannot write the hostfile ", path);
}

// Whether mpirun starts `h`'s ranks itself rather than over its remote shell: the host is
// this one by name, or its address is one of this host's interfaces (127.0.0.2 is not).
bool started_locally(const cluster::Host& h) {
  std::array<char, 256> name{};
  ::gethostname(name.data(), name.size() - 1);
  if (h.address.empty() || h.address == "localhost" || h.address == name.data()) return true;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return false;
  bool local = false;
  for (const ifaddrs* a = list; a != nullptr && !local; a = a->ifa_next) {
    if (a->ifa_addr == nullptr) continue;
    std::array<char, INET6_ADDRSTRLEN> text{};
    const int family = a->ifa_addr->sa_family;
    const void* raw = nullptr;
    if (family == AF_INET)
      raw = &reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr;
    else if (family == AF_INET6)
      raw = &reinterpret_cast<const sockaddr_in6*>(a->ifa_addr)->sin6_addr;
    if (raw && ::inet_ntop(family, raw, text.data(), text.size()) && h.address == text.data())
      local = true;
  }
  ::freeifaddrs(list);
  return local;
}

// The hosts of the job, for naming one whose ranks never start.
launch::StartWatch start_watch(const cluster::Inventory& inv, const cluster::Flavor& f) {
  launch::StartWatch watch;
  watch.timeout_s = launch::launch_timeout_from_env();
  for (const auto& [host, ranks] : inv.placement(f)) {
    std::string label = host.name;
    if (!host.address.empty() && host.address != host.name) label += " (" + host.address + ")";
    watch.hosts.push_back({label, ranks, !started_locally(host)});
  }
  return watch;
}

// Runs this program's command line as a job of f.devices ranks and exits with its status.
[[noreturn]] void relaunch(const cluster::Inventory& inv, const cluster::Flavor& f, int argc,
                           char** argv) {
  log_request(inv, f);
  const std::string job_id = new_job_id();
  ::setenv("SOLO_JOB_ID", job_id.c_str(), 1);
  // argv[0] may be relative to a directory the ranks do not start in.
  std::vector<std::string> args{fs::read_symlink("/proc/self/exe").string()};
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);

  // The hostfile lives in memory that mpirun inherits (memfd): nothing is left on disk, even
  // when this process is killed.
  const int hostfile_fd = ::memfd_create("solo-hostfile", 0);
  SOLO_CHECK(hostfile_fd >= 0,
             "cannot create the job's hostfile (memfd_create): ", std::strerror(errno));
  const std::string hostfile = "/proc/self/fd/" + std::to_string(hostfile_fd);
  launch::JobEnd end;
  try {
    const auto watch = start_watch(inv, f);
    const auto cmd = launcher_command(inv, f, args, hostfile);
    write_hostfile(hostfile, inv, f);
    std::fflush(stdout);
    std::fflush(stderr);
    end = launch::run_job(cmd, watch);
  } catch (...) {
    ::close(hostfile_fd);
    throw;
  }
  ::close(hostfile_fd);
  // A rank that said why it failed has said it all; otherwise name the rank and its end.
  if (end.status != 0 && !end.cause_shown) std::fprintf(stderr, "error: %s\n", end.message.c_str());
  std::fflush(stderr);
  std::exit(end.status);
}

// Leaves the rank only its own GPU, before anything initialises CUDA; CPU devices are
// processes whose share of the cores the launcher set through OMP_NUM_THREADS.
void bind_device(const cluster::Flavor& f) {
  const auto local = launch::local_rank_from_env();
  if (!local) return;
  const std::string visible =
      launch::visible_devices_for(f.device_kind, *local, std::getenv("CUDA_VISIBLE_DEVICES"));
  if (!visible.empty()) ::setenv("CUDA_VISIBLE_DEVICES", visible.c_str(), 1);
}

// Only rank 0 prints: the other ranks' stdout goes to /dev/null (stderr stays for errors).
void silence_stdout() {
  std::cout.flush();
  std::fflush(stdout);
  const int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::dup2(fd, STDOUT_FILENO);
  ::close(fd);
}

bool is_loopback(const std::string& address) {
  return address.empty() || address == "localhost" || address.starts_with("127.") ||
         address == "::1";
}

// Rank 0 logs where every rank runs; the gather also proves that every rank is connected.
void announce(const cluster::Inventory& inv, const cluster::Flavor& f, comm::Communicator& c) {
  constexpr size_t kNameBytes = 64;
  constexpr size_t kInts = kNameBytes / sizeof(int32_t);
  std::array<char, kNameBytes> name{};
  ::gethostname(name.data(), kNameBytes - 1);
  std::array<int32_t, kInts> mine{};
  std::memcpy(mine.data(), name.data(), kNameBytes);
  std::vector<int32_t> all(kInts * static_cast<size_t>(c.size()));
  c.all_gather(mine.data(), all.data(), kInts, DType::I32);
  if (c.rank() != 0) return;

  int rank = 0;
  const int n = c.size();
  for (const auto& [host, ranks] : inv.placement(f)) {
    for (int d = 0; d < ranks && rank < n; ++d, ++rank) {
      std::array<char, kNameBytes + 1> actual{};
      std::memcpy(actual.data(), all.data() + static_cast<size_t>(rank) * kInts, kNameBytes);
      std::string where = host_label(host);
      // Names the machine the rank really runs on when the inventory cannot say so.
      if (!is_loopback(host.address) && host.name != actual.data())
        where += detail::concat(", process on ", actual.data());
      info(detail::concat("[", rank + 1, "/", n, "] Connecting to device ", d, " on ", host.name,
                          " (", where, ") ..."));
    }
  }
}

}  // namespace

namespace {
// Each rank gets its share of the host's cores, so OpenMP does not oversubscribe them.
int threads_per_rank(int ranks_on_a_host) {
  const long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
  return static_cast<int>(std::max(1L, cores / std::max(1, ranks_on_a_host)));
}

// The tensor device the flavor's ranks compute on.
Device compute_device(const cluster::Flavor& f) {
  return Device{f.device_kind == "cpu" ? "cpu" : "cuda"};
}

// What the planner plans for on flavor `f`: its devices, the most on one host, and the memory
// of a device on its first host.
PlanFlavor plan_flavor(const cluster::Inventory& inv, const cluster::Flavor& f) {
  PlanFlavor p{f.name, f.device_kind, f.devices, 0, 0, 0};
  const auto placement = inv.placement(f);
  for (const auto& [host, ranks] : placement)
    p.devices_per_host = std::max(p.devices_per_host, ranks);
  p.threads = threads_per_rank(p.devices_per_host);
  if (!placement.empty())
    p.device_memory =
        static_cast<size_t>(std::max<int64_t>(0, placement.front().first.device_memory_bytes));
  return p;
}

// `solo plan --all-flavors -- PROGRAM` runs the program as one process that plans its first
// training step for every flavor (tensor.h, plan_all_flavors) and exits.
bool planning_all_flavors() {
  const char* env = std::getenv("SOLO_PLAN_ALL_FLAVORS");
  return env && std::string(env) == "1";
}
}  // namespace

Session::Session(int argc, char** argv)
    : inventory_(cluster::load_inventory()), flavor_(cluster::current_flavor(inventory_)) {
  const bool in_job = comm::launched_as_mpi_rank();
  const bool dry_run = planning_all_flavors();
  if (flavor_.devices > 1 && !in_job && !dry_run) relaunch(inventory_, flavor_, argc, argv);

  if (in_job) {
    // A rank ends with its launcher (mpirun, killed with SIGKILL by an OOM killer, say).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const char* markers = std::getenv("SOLO_LAUNCH_MARKERS");
    const auto rank = launch::rank_from_env();
    if (markers && std::string(markers) == "1" && rank)  // to the launching process's run_job
      std::fprintf(stderr, "%s%d\n", launch::kRankStarted.data(), *rank);
    bind_device(flavor_);
    comm_ = comm::make_mpi_communicator();
    if (comm_->rank() > 0) silence_stdout();
    SOLO_CHECK(comm_->size() == flavor_.devices, "this job has ", comm_->size(),
               " ranks but flavor ", flavor_.name, " has ", plural(flavor_.devices, "device"),
               ": start the program without mpirun (the Session launches the job) or pick a ",
               comm_->size(), "-device flavor with `solo switch`");
  } else {
    comm_ = comm::make_local_communicator();
    if (!dry_run) log_request(inventory_, flavor_);
  }
  const char* id = std::getenv("SOLO_JOB_ID");
  job_id_ = id && *id ? id : new_job_id();
  // The device's programs are compiled for the ranks' plan (data parallelism over them, or
  // SOLO_PLAN's, refused here when the flavor cannot run it).
  set_data_parallel(compute_device(flavor_), comm_.get());
  set_plan_flavor(compute_device(flavor_), plan_flavor(inventory_, flavor_));
  set_process_place({comm_->rank(), comm_->size()});
  if (dry_run) {
    std::vector<PlanFlavor> all;
    for (const cluster::Flavor& f : inventory_.flavors) all.push_back(plan_flavor(inventory_, f));
    plan_all_flavors(compute_device(flavor_), std::move(all));
    return;  // no memory limit, no job record: the process plans and exits
  }
  // The device memory the inventory gives this rank's host, as a limit on the device.
  int first = 0;
  for (const auto& [host, ranks] : inventory_.placement(flavor_)) {
    if (comm_->rank() < first + ranks) {
      set_device_memory_limit(compute_device(flavor_),
                              static_cast<size_t>(host.device_memory_bytes));
      break;
    }
    first += ranks;
  }

  announce(inventory_, flavor_, *comm_);
  if (!is_main()) return;
  if (const char* markers = std::getenv("SOLO_LAUNCH_MARKERS");
      markers && std::string(markers) == "1")
    std::fprintf(stderr, "%s\n", launch::kJobReady.data());
  info(detail::concat("Virtual accelerator is ready. Job ", job_id_, "."));
  started_ = static_cast<int64_t>(std::time(nullptr));
  for (int i = 0; i < argc; ++i) {
    if (i > 0) command_ += ' ';
    command_ += argv[i];
  }
  write_record({});
}

void Session::write_record(const std::vector<int64_t>& rank_memory_bytes) const {
#ifdef SOLO_HAVE_JOB_RECORDS
  cluster::JobRecord record;
  record.job_id = job_id_;
  record.flavor = flavor_.name;
  record.ranks = world_size();
  record.pid = ::getpid();
  record.started = started_;
  record.command = command_;
  record.rank_memory_bytes = rank_memory_bytes;
  try {
    cluster::write_job_record(record);
  } catch (const std::exception& e) {
    // `solo smi` not listing the job is no reason to stop training.
    std::fprintf(stderr, "[warn] the job is not listed by `solo smi`: %s\n", e.what());
  }
#else
  (void)rank_memory_bytes;
#endif
}

void Session::report_memory() {
  const auto mine = static_cast<int64_t>(device_memory_peak_bytes(device()));
  std::vector<int64_t> all(static_cast<size_t>(world_size()));
  comm_->all_gather(&mine, all.data(), 1, DType::I64);
  if (is_main()) write_record(all);
}

Device Session::device() const {
  return compute_device(flavor_);
}

Session::~Session() {
  if (comm_) set_data_parallel(compute_device(flavor_), nullptr);
  set_process_place({});
#ifdef SOLO_HAVE_JOB_RECORDS
  if (comm_ && is_main()) {
    try {
      cluster::remove_job_record(job_id_);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "[warn] %s\n", e.what());
    }
  }
#endif
}

std::vector<std::string> launcher_command(const cluster::Inventory& inv, const cluster::Flavor& f,
                                          const std::vector<std::string>& argv,
                                          const std::string& hostfile) {
  const auto placement = inv.placement(f);
  int most_on_a_host = 1;
  for (const auto& [host, ranks] : placement) most_on_a_host = std::max(most_on_a_host, ranks);
  const int threads = threads_per_rank(most_on_a_host);
  const bool cpu = f.device_kind == "cpu";

  std::vector<std::string> env{"SOLO_FLAVOR=" + f.name};
  if (const char* id = std::getenv("SOLO_JOB_ID"); id && *id)
    env.push_back(std::string("SOLO_JOB_ID=") + id);
  env.push_back(detail::concat("OMP_NUM_THREADS=", threads));
  env.emplace_back("SOLO_LAUNCH_MARKERS=1");  // ranks report their start (launch.h)

  std::vector<std::string> cmd;
  if (launch::in_slurm_allocation()) {
    std::string exports = "--export=ALL";
    for (const auto& e : env) exports += "," + e;
    // --kill-on-bad-exit ends the whole step when one task dies, as mpirun does.
    cmd = {launch::find_on_path("srun"), "-n", std::to_string(f.devices), "--kill-on-bad-exit=1",
           exports};
  } else {
    const std::string mpirun = launch::find_on_path("mpirun");
    SOLO_CHECK(!mpirun.empty(),
               "mpirun not found: install Debian's openmpi-bin (scripts/setup.sh) or pick a "
               "1-device flavor with `solo switch cpu-1`");
    cmd = {mpirun, "-np", std::to_string(f.devices), "--hostfile", hostfile};
    if (::geteuid() == 0) cmd.push_back("--allow-run-as-root");
    // CPU devices are processes, not cores: more of them than cores is allowed.
    if (cpu) cmd.push_back("--oversubscribe");
    cmd.insert(cmd.end(), {"--bind-to", "none", "--mca", "orte_abort_on_non_zero_status", "1"});
    for (const auto& e : env) cmd.insert(cmd.end(), {"-x", e});
  }
  cmd.insert(cmd.end(), argv.begin(), argv.end());
  return cmd;
}

}  // namespace solo
