//! x86_64 hardware: descriptor tables, exceptions, CPU helpers. All the
//! `unsafe` that programs the CPU itself lives here.

pub mod cpu;
pub mod gdt;
pub mod idt;
