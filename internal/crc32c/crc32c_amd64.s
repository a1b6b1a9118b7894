#include "textflag.h"

// func checksum3(a, b, c []byte) (x, y, z uint32)
//
// The three checksums go side by side over the length the buffers share,
// rounded down to eight bytes; past it (the tails), each goes on alone, eight
// bytes at a time, then four, two and one.
TEXT ·checksum3(SB), NOSPLIT, $0-84
	MOVQ a_base+0(FP), SI
	MOVQ a_len+8(FP), R11
	MOVQ b_base+24(FP), DI
	MOVQ b_len+32(FP), R12
	MOVQ c_base+48(FP), R8
	MOVQ c_len+56(FP), R13
	MOVL $0xffffffff, AX
	MOVL $0xffffffff, BX
	MOVL $0xffffffff, DX

	MOVQ R11, CX
	CMPQ R12, CX
	CMOVQLT R12, CX
	CMPQ R13, CX
	CMOVQLT R13, CX
	ANDQ $~7, CX
	JZ   tails
	SUBQ CX, R11
	SUBQ CX, R12
	SUBQ CX, R13

loop:
	CRC32Q (SI), AX
	CRC32Q (DI), BX
	CRC32Q (R8), DX
	ADDQ $8, SI
	ADDQ $8, DI
	ADDQ $8, R8
	SUBQ $8, CX
	JNZ  loop

tails:
ta8:
	CMPQ R11, $8
	JLT  ta4
	CRC32Q (SI), AX
	ADDQ $8, SI
	SUBQ $8, R11
	JMP  ta8
ta4:
	BTQ  $2, R11
	JNC  ta2
	CRC32L (SI), AX
	ADDQ $4, SI
ta2:
	BTQ  $1, R11
	JNC  ta1
	CRC32W (SI), AX
	ADDQ $2, SI
ta1:
	BTQ  $0, R11
	JNC  tadone
	CRC32B (SI), AX
tadone:
tb8:
	CMPQ R12, $8
	JLT  tb4
	CRC32Q (DI), BX
	ADDQ $8, DI
	SUBQ $8, R12
	JMP  tb8
tb4:
	BTQ  $2, R12
	JNC  tb2
	CRC32L (DI), BX
	ADDQ $4, DI
tb2:
	BTQ  $1, R12
	JNC  tb1
	CRC32W (DI), BX
	ADDQ $2, DI
tb1:
	BTQ  $0, R12
	JNC  tbdone
	CRC32B (DI), BX
tbdone:
tc8:
	CMPQ R13, $8
	JLT  tc4
	CRC32Q (R8), DX
	ADDQ $8, R8
	SUBQ $8, R13
	JMP  tc8
tc4:
	BTQ  $2, R13
	JNC  tc2
	CRC32L (R8), DX
	ADDQ $4, R8
tc2:
	BTQ  $1, R13
	JNC  tc1
	CRC32W (R8), DX
	ADDQ $2, R8
tc1:
	BTQ  $0, R13
	JNC  tcdone
	CRC32B (R8), DX
tcdone:

	NOTL AX
	NOTL BX
	NOTL DX
	MOVL AX, x+72(FP)
	MOVL BX, y+76(FP)
	MOVL DX, z+80(FP)
	RET
