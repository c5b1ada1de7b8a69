/**
 * The machine code of one stub block, with the assembly it was built from.
 * test/integration/runtime/stub-code.test.ts re-assembles STUB_ASM with the system `as`
 * and checks that the bytes agree, so the two cannot drift apart.
 *
 * Why the block exists: while the runtime uses a thread, the thread runs
 * with registers the runtime chose. If the tracer is killed at that moment,
 * the kernel detaches and the thread runs on with those registers. Every
 * injection therefore goes through this code, which ends by putting back the
 * thread's own registers from its save slot and jumping to where it was:
 *
 *   syscall_entry  the tracer sets rax/rdi/rsi/rdx/r10/r8/r9 and rip here
 *                  for a remote system call, and normally takes the thread
 *                  back at the syscall-exit stop. Falls through otherwise.
 *   call_return    the return address of a remote function call.
 *   restore        marks the slot RESTORING, restores the signal mask with
 *                  rt_sigprocmask (the tracer recognises this syscall's
 *                  entry stop as "the call returned"), the extended FPU
 *                  state with xrstor (the call may have clobbered xmm/ymm;
 *                  only the components the slot's mask names, see slots.ts),
 *                  then every general register, rflags (push+popf on the
 *                  thread's own stack, already below the red zone), rsp, and
 *                  finally jumps to the saved rip.
 *
 * The saved registers are the ones the kernel would have resumed the thread
 * with (see injection.ts: restart emulation), so an interrupted system call
 * is redone exactly as the kernel would have redone it.
 */
import { SLOT, SLOT_DELTA } from './layout.js';

export const STUB_ASM = `	.text
block:
	.set SLOT,     block + ${'0x' + SLOT_DELTA.toString(16)}
	.set STATE,    SLOT + ${'0x' + SLOT.STATE.toString(16)}
	.set MASK,     SLOT + ${'0x' + SLOT.MASK.toString(16)}
	.set XSAVE,    SLOT + ${'0x' + SLOT.XSAVE_PTR.toString(16)}
	.set RFBM,     SLOT + ${'0x' + SLOT.RFBM.toString(16)}
	.set REGS,     SLOT + ${'0x' + SLOT.REGS.toString(16)}
syscall_entry:
	syscall
call_return:
	mov	%rax, %r12		# a call's result, for the tracer at the marker stop
restore:
	movl	$3, STATE(%rip)		# SLOT_STATE.RESTORING
	mov	$14, %eax		# rt_sigprocmask(SIG_SETMASK, &slot.mask, NULL, 8)
	mov	$2, %edi
	lea	MASK(%rip), %rsi
	xor	%edx, %edx
	mov	$8, %r10d
	syscall				# the marker: its entry stop is where a call ends
marker_end:
	mov	XSAVE(%rip), %rcx	# 0 when the slot holds no XSAVE image
	test	%rcx, %rcx
	jz	1f
	mov	RFBM(%rip), %eax	# the components to restore (slots.ts restoreMask)
	mov	RFBM+4(%rip), %edx
	xrstor64 (%rcx)
1:
	mov	REGS+0x00(%rip), %r15	# user_regs_struct order
	mov	REGS+0x08(%rip), %r14
	mov	REGS+0x10(%rip), %r13
	mov	REGS+0x18(%rip), %r12
	mov	REGS+0x20(%rip), %rbp
	mov	REGS+0x28(%rip), %rbx
	mov	REGS+0x30(%rip), %r11
	mov	REGS+0x38(%rip), %r10
	mov	REGS+0x40(%rip), %r9
	mov	REGS+0x48(%rip), %r8
	mov	REGS+0x50(%rip), %rax
	mov	REGS+0x58(%rip), %rcx
	mov	REGS+0x60(%rip), %rdx
	mov	REGS+0x68(%rip), %rsi
	mov	REGS+0x70(%rip), %rdi
	pushq	REGS+0x90(%rip)		# eflags, via the stack we run on (below the red zone)
	popfq
	mov	REGS+0x98(%rip), %rsp
	jmp	*REGS+0x80(%rip)	# rip
`;

/** `as --64` output of STUB_ASM (.text section). */
// prettier-ignore
export const STUB_CODE = Buffer.from([
  0x0f, 0x05, 0x49, 0x89, 0xc4, 0xc7, 0x05, 0xf1, 0x3f, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0xb8,
  0x0e, 0x00, 0x00, 0x00, 0xbf, 0x02, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x35, 0xf0, 0x3f, 0x00, 0x00,
  0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x8b, 0x0d, 0xe7, 0x3f, 0x00,
  0x00, 0x48, 0x85, 0xc9, 0x74, 0x10, 0x8b, 0x05, 0xbc, 0x40, 0x00, 0x00, 0x8b, 0x15, 0xba, 0x40,
  0x00, 0x00, 0x48, 0x0f, 0xae, 0x29, 0x4c, 0x8b, 0x3d, 0xd3, 0x3f, 0x00, 0x00, 0x4c, 0x8b, 0x35,
  0xd4, 0x3f, 0x00, 0x00, 0x4c, 0x8b, 0x2d, 0xd5, 0x3f, 0x00, 0x00, 0x4c, 0x8b, 0x25, 0xd6, 0x3f,
  0x00, 0x00, 0x48, 0x8b, 0x2d, 0xd7, 0x3f, 0x00, 0x00, 0x48, 0x8b, 0x1d, 0xd8, 0x3f, 0x00, 0x00,
  0x4c, 0x8b, 0x1d, 0xd9, 0x3f, 0x00, 0x00, 0x4c, 0x8b, 0x15, 0xda, 0x3f, 0x00, 0x00, 0x4c, 0x8b,
  0x0d, 0xdb, 0x3f, 0x00, 0x00, 0x4c, 0x8b, 0x05, 0xdc, 0x3f, 0x00, 0x00, 0x48, 0x8b, 0x05, 0xdd,
  0x3f, 0x00, 0x00, 0x48, 0x8b, 0x0d, 0xde, 0x3f, 0x00, 0x00, 0x48, 0x8b, 0x15, 0xdf, 0x3f, 0x00,
  0x00, 0x48, 0x8b, 0x35, 0xe0, 0x3f, 0x00, 0x00, 0x48, 0x8b, 0x3d, 0xe1, 0x3f, 0x00, 0x00, 0xff,
  0x35, 0xfb, 0x3f, 0x00, 0x00, 0x9d, 0x48, 0x8b, 0x25, 0xfb, 0x3f, 0x00, 0x00, 0xff, 0x25, 0xdd,
  0x3f, 0x00, 0x00,
]);

/** Offsets of the labels inside a block. */
export const ENTRY = {
  SYSCALL: 0x00,
  CALL_RETURN: 0x02,
  /** rip reported at the entry stop of the marker rt_sigprocmask. */
  MARKER_END: 0x2a,
} as const;
