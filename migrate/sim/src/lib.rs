//! Host-only simulator for the `migrate` policies (DESIGN.md "Workspace":
//! workload dirty patterns + link model, for benches).
