# qemu-test serial ports: a 64 KiB x86 firmware image for
# `qemu-system-x86_64 -M q35|pc -bios serial-ports-x86_64.bin`.
#
# It writes one line to each 16550 UART that is present:
#   COM1 0x3f8: "qemu-test serial port 0 (0x3f8)\r\n"
#   COM2 0x2f8: "qemu-test serial port 1 (0x2f8)\r\n"
#   COM3 0x3e8: "qemu-test serial port 2 (0x3e8)\r\n"
#   COM4 0x2e8: "qemu-test serial port 3 (0x2e8)\r\n"
# and then halts for good (cli; hlt). It never reads input. A port is
# "present" if its scratch register keeps what is written to it; absent
# ports are skipped, so the guest never hangs on a missing UART.
#
# The protocol is described in ../README.md and in the rustdoc of
# `qemu_test::guest::SERIAL_PORTS_X86_64`; keep the three in sync.
#
# Build (or run `cargo xtask guests`):
#   as --32 -o ports.o ports.S
#   ld -m elf_i386 --build-id=none -T ports.ld -o ports.elf ports.o
#   objcopy -O binary ports.elf serial-ports-x86_64.bin
#
# QEMU maps the image at 0xffff0000 and aliases it at 0xf0000; the CPU
# starts in real mode at 0xfffffff0 (image offset 0xfff0). Everything runs
# in 16-bit real mode with CS = DS = 0xf000, so image offsets are segment
# offsets.

        .code16
        .text

        .equ    LSR_THRE, 0x20

        .global _start
_start:
main:
        cli
        cld
        mov     %cs, %ax
        mov     %ax, %ds
        xor     %ax, %ax
        mov     %ax, %ss
        mov     $0x7000, %sp
        mov     $ports, %bx
1:      mov     (%bx), %dx              # UART base port, 0 = end of table
        test    %dx, %dx
        jz      halt
        call    uart_probe
        jnz     2f                      # absent: skip
        call    uart_init
        mov     2(%bx), %si
        call    uart_puts
2:      add     $4, %bx
        jmp     1b

halt:
        cli
        hlt
        jmp     halt

# uart_probe: ZF set if a UART answers at base %dx. Clobbers %al.
uart_probe:
        add     $7, %dx                 # scratch register
        mov     $0x5a, %al
        out     %al, %dx
        in      %dx, %al
        cmp     $0x5a, %al
        jne     1f
        mov     $0xa5, %al
        out     %al, %dx
        in      %dx, %al
        cmp     $0xa5, %al
1:      lahf
        sub     $7, %dx
        sahf
        ret

# uart_init: 115200 8N1, FIFOs on, no interrupts, DTR and RTS set.
# %dx = base (preserved). Clobbers %al.
uart_init:
        inc     %dx
        xor     %al, %al
        out     %al, %dx                # IER = 0
        add     $2, %dx
        mov     $0x80, %al
        out     %al, %dx                # LCR = DLAB
        sub     $3, %dx
        mov     $1, %al
        out     %al, %dx                # DLL = 1 (115200 baud)
        inc     %dx
        xor     %al, %al
        out     %al, %dx                # DLM = 0
        add     $2, %dx
        mov     $0x03, %al
        out     %al, %dx                # LCR = 8N1
        dec     %dx
        mov     $0x07, %al
        out     %al, %dx                # FCR = enable and clear FIFOs
        add     $2, %dx
        mov     $0x03, %al
        out     %al, %dx                # MCR = DTR | RTS
        sub     $4, %dx
        ret

# uart_puts: send the NUL-terminated string at %ds:%si to the UART at %dx
# (preserved). Clobbers %al, %ah, %si.
uart_puts:
1:      lodsb
        test    %al, %al
        jz      3f
        mov     %al, %ah
        add     $5, %dx                 # LSR
2:      in      %dx, %al
        test    $LSR_THRE, %al
        jz      2b
        sub     $5, %dx
        mov     %ah, %al
        out     %al, %dx
        jmp     1b
3:      ret

ports:
        .word   0x3f8, msg0
        .word   0x2f8, msg1
        .word   0x3e8, msg2
        .word   0x2e8, msg3
        .word   0
msg0:   .asciz  "qemu-test serial port 0 (0x3f8)\r\n"
msg1:   .asciz  "qemu-test serial port 1 (0x2f8)\r\n"
msg2:   .asciz  "qemu-test serial port 2 (0x3e8)\r\n"
msg3:   .asciz  "qemu-test serial port 3 (0x2e8)\r\n"

        # Reset vector: physical 0xfffffff0, CS base 0xffff0000, IP 0xfff0.
        .org    0xfff0, 0
reset_vector:
        ljmp    $0xf000, $main
        .org    0x10000, 0
