//! The command scanner: the only path from a guest's ring TAIL write to an
//! engine (DESIGN.md "What the monitor does" 2).
