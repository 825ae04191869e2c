//! x86_64 hardware: descriptor tables, exceptions, CPU helpers. All the
//! `unsafe` that programs the CPU itself lives here.

pub mod apic;
pub mod cpu;
pub mod gdt;
pub mod idt;
pub mod ring3;
