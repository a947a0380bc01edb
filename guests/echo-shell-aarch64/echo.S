// qemu-test echo shell: a bare-metal line-echo guest for
// `qemu-system-aarch64 -M virt -cpu max|cortex-a57 -kernel echo-shell-aarch64.bin`.
//
// The protocol is described in ../README.md and in the rustdoc of
// `qemu_test::guest::ECHO_SHELL_AARCH64`; keep the three in sync.
//
// Build (or run `cargo xtask guests`):
//   aarch64-linux-gnu-as -o echo.o echo.S
//   aarch64-linux-gnu-ld --build-id=none -T echo.ld -o echo.elf echo.o
//   aarch64-linux-gnu-objcopy -O binary echo.elf echo-shell-aarch64.bin
//
// The image is a raw binary. QEMU's -kernel loader recognises neither ELF,
// uImage nor an arm64 Image header, so it loads the bytes at RAM base +
// 0x80000 (0x40080000) and enters them at EL1 (EL2 with virtualization=on)
// with the MMU and caches off. All code is position independent.
//
// Hardware used (virt machine):
//   PL011 UART   0x09000000, SPI 1 (INTID 33)
//   GIC          distributor 0x08000000; GICv2 CPU interface 0x08010000,
//                GICv3 redistributor 0x080a0000 (GICv3 detected via
//                ID_AA64PFR0_EL1.GIC)
//   PSCI         hvc #0 (smc #0 when entered at EL2 or above)
//
// While waiting for input the CPU sleeps in WFI (the UART receive interrupt
// is routed through the GIC but left masked in PSTATE, so it only wakes the
// CPU and is never taken). An idle guest therefore costs no host CPU.
//
// No stack is used. Register conventions in the main loop:
//   x20 UART base, x21 line buffer, x22 line length, x23 "last byte was CR",
//   x24 PSCI conduit (0 = hvc, 1 = smc).
// Subroutines are leaves or save lr in x9, and clobber only x0-x10.

        .equ UART_BASE,   0x09000000
        .equ UART_DR,     0x00
        .equ UART_FR,     0x18
        .equ UART_LCR_H,  0x2c
        .equ UART_CR,     0x30
        .equ UART_IMSC,   0x38
        .equ FR_RXFE,     4
        .equ FR_TXFF,     5

        .equ GICD_BASE,   0x08000000
        .equ GICC_BASE,   0x08010000
        .equ GICR_BASE,   0x080a0000
        .equ UART_INTID,  33

        .equ PSCI_SYSTEM_OFF,   0x84000008
        .equ PSCI_SYSTEM_RESET, 0x84000009

        .equ LINE_MAX,    256

        .text
        .global _start
_start:
        // Word 0 is a polyglot. As A64 it is `tst x0, x0` (harmless). As A32
        // (QEMU's default virt CPU is the 32-bit cortex-a15, which loads raw
        // images at 0x40010000 and enters them in ARM state) it is
        // `b a32_entry`, which prints a hint and powers off instead of
        // executing 64-bit code as garbage. a32_entry must stay at 0x84.
        .inst   0xea00001f
        b       start64

        .org    0x84, 0
a32_entry:
        // A32 code, hand-encoded: print a32_msg, then PSCI SYSTEM_OFF.
        .inst   0xe28f1034              // add   r1, pc, #0x34 (a32_msg)
        .inst   0xe3a02409              // mov   r2, #0x09000000
        .inst   0xe4d10001              // 1: ldrb r0, [r1], #1
        .inst   0xe3500000              // cmp   r0, #0
        .inst   0x0a000004              // beq   2f
        .inst   0xe5923018              // 3: ldr r3, [r2, #0x18]
        .inst   0xe3130020              // tst   r3, #0x20
        .inst   0x1afffffc              // bne   3b
        .inst   0xe5820000              // str   r0, [r2]
        .inst   0xeafffff7              // b     1b
        .inst   0xe3000008              // 2: movw r0, #0x0008
        .inst   0xe3480400              // movt  r0, #0x8400
        .inst   0xe1400070              // hvc   #0
        .inst   0xe320f003              // 4: wfi
        .inst   0xeafffffd              // b     4b
a32_msg:        // must be at a32_entry + 0x3c (see the add above)
        .if     a32_msg - a32_entry - 0x3c
        .error  "a32_msg moved"
        .endif
        .asciz  "\r\nqemu-test echo shell: this is an AArch64 guest; use -cpu max or -cpu cortex-a57\r\n"
        .balign 4

start64:
        msr     daifset, #0xf
        mrs     x0, CurrentEL
        ubfx    x0, x0, #2, #2
        cmp     x0, #2
        cset    x24, hs                 // EL2/EL3: PSCI via smc
        adr     x1, vectors
        b.hs    1f
        msr     vbar_el1, x1
        b       2f
1:      msr     vbar_el2, x1
2:      isb

        // UART: 8N1, FIFO off (QEMU then holds at most one received byte and
        // applies back-pressure to the chardev, so input is never dropped;
        // enabling the FIFO later would flush bytes that already arrived),
        // receive interrupt unmasked (used only to wake WFI).
        mov     x20, #UART_BASE
        mov     w0, #0x60
        str     w0, [x20, #UART_LCR_H]
        mov     w0, #(1 << FR_RXFE)     // IMSC.RXIM is bit 4 as well
        str     w0, [x20, #UART_IMSC]
        mov     w0, #0x301              // UARTEN | TXE | RXE
        str     w0, [x20, #UART_CR]

        // GIC: route the UART interrupt to this CPU so that WFI wakes up.
        // ID_AA64PFR0_EL1.GIC != 0: GICv3/v4 system register interface.
        mov     x1, #GICD_BASE
        mrs     x0, id_aa64pfr0_el1
        ubfx    x0, x0, #24, #4
        cbnz    x0, gicv3
        mov     w0, #3
        str     w0, [x1]                // GICD_CTLR: enable groups 0 and 1
        mov     w0, #0x01010101
        str     w0, [x1, #0x800 + (UART_INTID / 4) * 4]  // ITARGETSR: CPU 0
        mov     w0, #(1 << (UART_INTID % 32))
        str     w0, [x1, #0x100 + (UART_INTID / 32) * 4] // ISENABLER
        mov     x2, #GICC_BASE
        mov     w0, #0xff
        str     w0, [x2, #0x4]          // GICC_PMR: let everything through
        mov     w0, #3
        str     w0, [x2]                // GICC_CTLR: enable
        b       boot
gicv3:
        mov     w0, #0x10
        str     w0, [x1]                // GICD_CTLR.ARE
        mov     w0, #0x13
        str     w0, [x1]                // ... + enable groups 0 and 1
        mov     w0, #(1 << (UART_INTID % 32))
        str     w0, [x1, #0x80 + (UART_INTID / 32) * 4]  // IGROUPR: group 1
        str     w0, [x1, #0x100 + (UART_INTID / 32) * 4] // ISENABLER
        // GICD_IROUTER<33> resets to affinity 0.0.0.0, i.e. this CPU.
        mov     x2, #GICR_BASE
        ldr     w0, [x2, #0x14]         // GICR_WAKER
        bic     w0, w0, #2              // clear ProcessorSleep
        str     w0, [x2, #0x14]
1:      ldr     w0, [x2, #0x14]
        tbnz    w0, #2, 1b              // wait for ChildrenAsleep == 0
        mrs     x0, S3_0_C12_C12_5      // ICC_SRE_EL1
        orr     x0, x0, #1
        msr     S3_0_C12_C12_5, x0
        isb
        mov     x0, #0xff
        msr     S3_0_C4_C6_0, x0        // ICC_PMR_EL1
        mov     x0, #1
        msr     S3_0_C12_C12_6, x0      // ICC_IGRPEN0_EL1
        msr     S3_0_C12_C12_7, x0      // ICC_IGRPEN1_EL1
        isb
        b       boot

        // Exception vectors (VBAR must be 2 KiB aligned and the image is
        // loaded at 0x40080000). Only the "current EL with SP_ELx" entries
        // can be taken; the SP_EL0 entries at 0x000-0x180 overlap the code
        // above and are never used. Nothing should ever trap; if something
        // does (e.g. PSCI missing), say so and stop.
        .org    0x200, 0
vectors = _start
        b       exception               // synchronous
        .balign 0x80
        b       exception               // IRQ
        .balign 0x80
        b       exception               // FIQ
        .balign 0x80
        b       exception               // SError
        .balign 0x80

exception:
        mov     x20, #UART_BASE
        str     wzr, [x20, #UART_IMSC]
        adr     x0, msg_exception
        bl      puts
        mrs     x0, CurrentEL
        cmp     x0, #(2 << 2)
        b.hs    1f
        mrs     x0, esr_el1
        bl      puthex
        adr     x0, msg_elr
        bl      puts
        mrs     x0, elr_el1
        b       2f
1:      mrs     x0, esr_el2
        bl      puthex
        adr     x0, msg_elr
        bl      puts
        mrs     x0, elr_el2
2:      bl      puthex
        adr     x0, msg_crlf
        bl      puts
        b       halt

boot:
        adr     x21, line_buf
        adr     x0, msg_banner
        bl      puts
        mov     x22, #0
        mov     x23, #1                 // swallow a LF left over from "reset\r\n"

read_loop:
        bl      getc
        cmp     w0, #'\n'
        b.ne    1f
        cbz     x23, 1f
        mov     x23, #0                 // LF of a CR LF pair: already handled
        b       read_loop
1:      mov     x23, #0
        cmp     w0, #'\r'
        b.ne    2f
        mov     x23, #1
        b       end_of_line
2:      cmp     w0, #'\n'
        b.eq    end_of_line
        cmp     w0, #0x7f               // DEL or BS: erase one character
        b.eq    3f
        cmp     w0, #0x08
        b.ne    4f
3:      cbz     x22, read_loop
        sub     x22, x22, #1
        adr     x0, msg_erase
        bl      puts
        b       read_loop
4:      cmp     x22, #LINE_MAX          // full: drop (and do not echo)
        b.hs    read_loop
        strb    w0, [x21, x22]
        add     x22, x22, #1
        bl      putc                    // echo
        b       read_loop

end_of_line:
        adr     x0, msg_crlf
        bl      puts
        cbz     x22, prompt             // empty line: prompt again

        adr     x0, cmd_poweroff
        bl      line_is
        cbnz    x0, do_poweroff
        adr     x0, cmd_reset
        bl      line_is
        cbnz    x0, do_reset
        adr     x0, cmd_panic
        bl      line_is
        cbnz    x0, do_panic
        adr     x0, cmd_bytes
        bl      line_is
        cbnz    x0, do_bytes
        adr     x0, cmd_flood
        bl      line_starts
        cbnz    x0, try_flood

say:
        adr     x0, msg_you_said
        bl      puts
        mov     x0, x21
        mov     x1, x22
        bl      putn
        adr     x0, msg_crlf
        bl      puts
prompt:
        mov     x22, #0
        adr     x0, msg_prompt
        bl      puts
        b       read_loop

do_poweroff:
        adr     x0, msg_poweroff
        bl      puts
        movz    w0, #(PSCI_SYSTEM_OFF >> 16), lsl #16
        movk    w0, #(PSCI_SYSTEM_OFF & 0xffff)
        b       psci
do_reset:
        adr     x0, msg_reset
        bl      puts
        movz    w0, #(PSCI_SYSTEM_RESET >> 16), lsl #16
        movk    w0, #(PSCI_SYSTEM_RESET & 0xffff)
psci:
        cbnz    x24, 1f
        hvc     #0
        b       2f
1:      smc     #0
2:      adr     x0, msg_psci_failed     // PSCI returned: it did not work
        bl      puts
        b       prompt

do_panic:
        adr     x0, msg_panic
        bl      puts
halt:
        msr     daifset, #0xf
        mov     x20, #UART_BASE
        str     wzr, [x20, #UART_IMSC]  // no more wake-ups: sleep for good
1:      wfi
        b       1b

try_flood:
        // x1 = 6 = index of the first digit. Up to 18 decimal digits, no sign,
        // nothing else; otherwise the line is just echoed.
        cmp     x1, x22
        b.eq    say
        sub     x2, x22, x1
        cmp     x2, #18
        b.hi    say
        mov     x5, #0
        mov     x3, #10
1:      ldrb    w2, [x21, x1]
        sub     w2, w2, #'0'
        cmp     w2, #9
        b.hi    say
        madd    x5, x5, x3, x2
        add     x1, x1, #1
        cmp     x1, x22
        b.lo    1b
        // Byte i of the flood is FLOOD_ALPHABET[i % 36].
        adr     x6, flood_alphabet
        mov     x7, #0
        cbz     x5, 3f
1:      ldrb    w0, [x6, x7]
2:      ldr     w1, [x20, #UART_FR]
        tbnz    w1, #FR_TXFF, 2b
        str     w0, [x20, #UART_DR]
        add     x7, x7, #1
        cmp     x7, #36
        csel    x7, xzr, x7, eq
        subs    x5, x5, #1
        b.ne    1b
3:      adr     x0, msg_flood_done
        bl      puts
        b       prompt

do_bytes:
        mov     w10, #0
1:      mov     w0, w10
        bl      putc
        add     w10, w10, #1
        cmp     w10, #256
        b.lo    1b
        adr     x0, msg_bytes_done
        bl      puts
        b       prompt

// ---------------------------------------------------------------- helpers

// putc: send the byte in w0. Clobbers w1.
putc:
        ldr     w1, [x20, #UART_FR]
        tbnz    w1, #FR_TXFF, putc
        str     w0, [x20, #UART_DR]
        ret

// getc: wait for a received byte and return it in w0 (sleeping in WFI).
getc:
        ldr     w0, [x20, #UART_FR]
        tbz     w0, #FR_RXFE, 1f
        wfi
        b       getc
1:      ldr     w0, [x20, #UART_DR]
        and     w0, w0, #0xff
        ret

// puts: send the NUL-terminated string at x0. Clobbers x0, x1, x8, x9.
puts:
        mov     x9, lr
        mov     x8, x0
1:      ldrb    w0, [x8], #1
        cbz     w0, 2f
        bl      putc
        b       1b
2:      ret     x9

// putn: send x1 bytes from x0. Clobbers x0, x1, x8, x9, x10.
putn:
        mov     x9, lr
        mov     x8, x0
        add     x10, x0, x1
1:      cmp     x8, x10
        b.hs    2f
        ldrb    w0, [x8], #1
        bl      putc
        b       1b
2:      ret     x9

// puthex: send x0 as "0x" and 16 hex digits. Clobbers x0-x3, x8, x9.
puthex:
        mov     x9, lr
        mov     x8, x0
        mov     w0, #'0'
        bl      putc
        mov     w0, #'x'
        bl      putc
        mov     x2, #60
        adr     x3, flood_alphabet      // starts with 0-9a-f
1:      lsr     x0, x8, x2
        and     x0, x0, #0xf
        ldrb    w0, [x3, x0]
        bl      putc
        subs    x2, x2, #4
        b.pl    1b
        ret     x9

// line_starts: x0 = NUL-terminated string. Returns x0 = 1 if the line starts
// with it (x1 = its length), else x0 = 0. Clobbers x1-x3.
line_starts:
        mov     x1, #0
1:      ldrb    w2, [x0, x1]
        cbz     w2, 2f
        cmp     x1, x22
        b.hs    3f
        ldrb    w3, [x21, x1]
        cmp     w2, w3
        b.ne    3f
        add     x1, x1, #1
        b       1b
2:      mov     x0, #1
        ret
3:      mov     x0, #0
        ret

// line_is: x0 = NUL-terminated string. Returns x0 = 1 if the line equals it.
// Clobbers x1-x4.
line_is:
        mov     x4, lr
        bl      line_starts
        cmp     x1, x22
        csel    x0, x0, xzr, eq
        ret     x4

// ---------------------------------------------------------------- strings

flood_alphabet:  .ascii "0123456789abcdefghijklmnopqrstuvwxyz"
msg_banner:      .asciz "\r\nqemu-test echo shell\r\nlogin: "
msg_prompt:      .asciz "$ "
msg_crlf:        .asciz "\r\n"
msg_erase:       .asciz "\b \b"
msg_you_said:    .asciz "you said: "
msg_poweroff:    .asciz "powering off\r\n"
msg_reset:       .asciz "resetting\r\n"
msg_panic:       .asciz "guest panic\r\n"
msg_flood_done:  .asciz "\r\nflood done\r\n"
msg_bytes_done:  .asciz "\r\nbytes done\r\n"
msg_psci_failed: .asciz "psci call failed\r\n"
msg_exception:   .asciz "\r\nguest exception: ESR="
msg_elr:         .asciz " ELR="
cmd_poweroff:    .asciz "poweroff"
cmd_reset:       .asciz "reset"
cmd_panic:       .asciz "panic"
cmd_bytes:       .asciz "bytes"
cmd_flood:       .asciz "flood "
        .balign 16
image_end:

// The line buffer lives in RAM right after the image; it is not part of the
// binary (RAM contents there do not matter).
        .equ    line_buf, image_end
