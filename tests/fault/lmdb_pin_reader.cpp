// Test helper: opens an LMDB environment read-only, begins a read transaction, prints "pinned"
// and holds it (pinning every page the snapshot references) until SIGTERM, then ends it and
// exits 0. Used to fill a ring's map with pages the writer may not reuse.
#include <lmdb.h>
#include <unistd.h>
#include <csignal>

#include <cstdio>

namespace {
volatile sig_atomic_t g_stop = 0;
void onTerm(int /*sig*/) { g_stop = 1; }
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s RING_DIR\n", argv[0]);
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = onTerm;
  sigaction(SIGTERM, &sa, nullptr);
  MDB_env* env = nullptr;
  MDB_txn* txn = nullptr;
  if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 8) != 0 ||
      mdb_env_open(env, argv[1], MDB_RDONLY | MDB_NOTLS, 0640) != 0 ||
      mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) != 0) {
    std::fprintf(stderr, "cannot open a read transaction on %s\n", argv[1]);
    return 1;
  }
  std::printf("pinned\n");
  std::fflush(stdout);
  while (g_stop == 0) pause();
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return 0;
}
