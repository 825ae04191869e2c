//! Entry stubs: the Multiboot2 header, the PVH ELF note, and the 32-bit code
//! that enters long mode. No external assembler: `global_asm!` only.
//!
//! Early page tables identity-map 0..4 GiB with 2 MiB pages, enough for the
//! image, the loader's structures and the kernel's first frame allocations;
//! the kernel then builds its own tables.

core::arch::global_asm!(
    r#"
    .section .multiboot2, "a"
    .balign 8
gmig_mb2_header:
    .long 0xe85250d6
    .long 0
    .long gmig_mb2_header_end - gmig_mb2_header
    .long 0x100000000 - (0xe85250d6 + (gmig_mb2_header_end - gmig_mb2_header))
    .short 0
    .short 0
    .long 8
gmig_mb2_header_end:

    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .quad gmig_entry32
    .balign 4

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4 * 4096
    .global boot_stack_bottom
boot_stack_bottom:
    .skip 256 * 1024
    .global boot_stack_top
boot_stack_top:

    .section .rodata.boot, "a"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .boot.text, "ax"
    .code32
    .global gmig_entry32
gmig_entry32:
    cli
    cld
    mov edi, eax
    mov esi, ebx
    mov esp, offset boot_stack_top

    mov eax, offset boot_pdpt
    or eax, 3
    mov dword ptr [boot_pml4], eax

    xor ecx, ecx
.Lgmig_fill_pdpt:
    mov eax, ecx
    shl eax, 12
    add eax, offset boot_pd
    or eax, 3
    mov dword ptr [boot_pdpt + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jb .Lgmig_fill_pdpt

    xor ecx, ecx
.Lgmig_fill_pd:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov dword ptr [boot_pd + ecx * 8], eax
    inc ecx
    cmp ecx, 2048
    jb .Lgmig_fill_pd

    mov eax, offset boot_pml4
    mov cr3, eax
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x900
    wrmsr
    mov eax, cr0
    or eax, 0x80000001
    mov cr0, eax

    lgdt [boot_gdt_ptr]
    push 0x08
    mov eax, offset gmig_entry64
    push eax
    retf

    .code64
gmig_entry64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    lea rsp, [rip + boot_stack_top]
    xor ebp, ebp
    mov edi, edi
    mov esi, esi
    call boot_rust_entry
.Lgmig_halt:
    hlt
    jmp .Lgmig_halt
"#
);
