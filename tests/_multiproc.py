"""Start two CPU processes with a gloo group, the way `accelerate launch` would, for multi-process tests."""

from __future__ import annotations


def launch_two_cpu_processes(function, args, rendezvous_file):
    """accelerate.debug_launcher, but spawned: it forks, and a fork after this process has used torch's OpenMP pool
    deadlocks the children in their first matmul. The gloo group rendezvous through a file, so no port can clash."""
    from accelerate.utils import PrepareForLaunch, patch_environment
    from torch.multiprocessing import start_processes

    with patch_environment(world_size=2, accelerate_use_cpu="yes", accelerate_mixed_precision="no",
                           accelerate_debug_rdv_file=str(rendezvous_file), gloo_socket_ifname="lo",
                           master_addr="127.0.0.1", omp_num_threads="1"):  # no port: the group is already up
        start_processes(PrepareForLaunch(function, debug=True), args=args, nprocs=2, start_method="spawn")
