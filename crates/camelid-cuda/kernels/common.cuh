// camelid CUDA kernels: what every source uses, put before each of them when it is compiled
// (the host's NVRTC programs, scripts/check-cuda-kernels.sh's nvcc runs and emulation). Like
// the sources, it includes no header.

// Programmatic dependent launch (sm_90 and later; PTX ISA, "griddepcontrol"; README.md, "Launch
// order"): waits until the stream's previous kernel has completed and its writes show, then
// lets the next kernel launch. Every thread of every kernel calls it before it reads or writes
// anything another kernel writes (the products first ask L2 for their weights, which no kernel
// writes). Below sm_90, and for a kernel launched without the attribute, there is nothing to
// wait for.
__device__ __forceinline__ void grid_dep_wait() {
#if defined(CAMELID_EMU) || __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n\tgriddepcontrol.launch_dependents;" ::: "memory");
#endif
}
