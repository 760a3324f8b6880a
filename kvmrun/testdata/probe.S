# The accelerator probe's firmware (kvmrun's probeFirmware holds the same
# bytes; TestProbeFirmwareAssembles checks them against this source).
# It is a 64 KiB -bios image: the CPU starts at F000:FFF0, jumps to the
# start of the image at F000:0000 and walks through the three x86 modes a
# Linux kernel uses while booting, printing one letter in each on COM1:
# R (real mode), P (32-bit protected mode), L (64-bit long mode with
# paging), then writes 0x31 to isa-debug-exit, so QEMU exits with status
# (0x31<<1)|1 = 99.
#
#   as --64 -o probe.o probe.S && ld -Ttext=0 --oformat binary -o probe.bin probe.o
	.code16
	.globl _start
_start:
	cli
	mov $0x3f8, %dx
	mov $'R', %al
	out %al, %dx
	lgdtl %cs:gdtr
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $0x08, $(0xF0000 + pm32)
	.code32
pm32:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $0x3f8, %dx
	mov $'P', %al
	out %al, %dx
	# identity-map the first 2 MiB: PML4 at 0x1000, PDPT 0x2000, PD 0x3000
	mov $0x1000, %edi
	xor %eax, %eax
	mov $0xC00, %ecx
	rep stosl
	movl $0x2003, 0x1000
	movl $0x3003, 0x2000
	movl $0x0083, 0x3000
	mov $0x1000, %eax
	mov %eax, %cr3
	mov %cr4, %eax
	or $0x20, %eax          # PAE
	mov %eax, %cr4
	mov $0xC0000080, %ecx   # EFER
	rdmsr
	or $0x100, %eax         # LME
	wrmsr
	mov %cr0, %eax
	or $0x80000000, %eax    # PG
	mov %eax, %cr0
	ljmp $0x18, $(0xF0000 + lm64)
	.code64
lm64:
	mov $0x3f8, %dx
	mov $'L', %al
	out %al, %dx
	mov $'\n', %al
	out %al, %dx
	mov $0xf4, %dx
	mov $0x31, %al
	out %al, %dx
1:	hlt
	jmp 1b
	.balign 8
gdt:
	.quad 0
	.quad 0x00CF9A000000FFFF        # 0x08: 32-bit code
	.quad 0x00CF92000000FFFF        # 0x10: data
	.quad 0x00AF9A000000FFFF        # 0x18: 64-bit code
gdtr:
	.word 31
	.long 0xF0000 + gdt
