package crc32c

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

func want(p []byte) uint32 { return crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli)) }

// TestChecksum3 compares Checksum3 with hash/crc32 on every combination of
// short lengths and on random longer ones, at every alignment.
func TestChecksum3(t *testing.T) {
	buf := make([]byte, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	check := func(a, b, c []byte) {
		t.Helper()
		x, y, z := Checksum3(a, b, c)
		if x != want(a) || y != want(b) || z != want(c) {
			t.Fatalf("lengths %d %d %d: got %08x %08x %08x, want %08x %08x %08x",
				len(a), len(b), len(c), x, y, z, want(a), want(b), want(c))
		}
	}
	for la := 0; la <= 40; la++ {
		for lb := 0; lb <= 40; lb++ {
			for lc := 0; lc <= 40; lc += 3 {
				check(buf[1:1+la], buf[100+lb%7:100+lb%7+lb], buf[300:300+lc])
			}
		}
	}
	for range 20000 {
		n := func() []byte {
			off := r.IntN(64)
			return buf[off : off+r.IntN(1200)]
		}
		check(n(), n(), n())
	}
}

func FuzzChecksum3(f *testing.F) {
	f.Add([]byte("abcdefghijklmnop"), []byte("0123456789"), []byte(""))
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		x, y, z := Checksum3(a, b, c)
		if x != want(a) || y != want(b) || z != want(c) {
			t.Fatalf("Checksum3 differs from hash/crc32")
		}
	})
}

func benchBufs() [][]byte {
	bufs := make([][]byte, 3*1024)
	for i := range bufs {
		bufs[i] = make([]byte, 185)
		for j := range bufs[i] {
			bufs[i][j] = byte(i * j)
		}
	}
	return bufs
}

func BenchmarkChecksum185(b *testing.B) {
	bufs := benchBufs()
	b.SetBytes(185)
	var s uint32
	for i := 0; b.Loop(); i++ {
		s ^= Checksum(bufs[i%len(bufs)])
	}
	_ = s
}

func BenchmarkChecksum3x185(b *testing.B) {
	bufs := benchBufs()
	b.SetBytes(3 * 185)
	var s uint32
	for i := 0; b.Loop(); i++ {
		k := (i * 3) % len(bufs)
		x, y, z := Checksum3(bufs[k], bufs[k+1], bufs[k+2])
		s ^= x ^ y ^ z
	}
	_ = s
}
