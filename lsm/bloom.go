package lsm

// bloom is a Bloom filter over a table's keys: about bloomBitsPerKey bits per
// key and bloomK probes by double hashing, which gives a false-positive rate
// near 1% (measured in TestBloomFalsePositiveRate). Encoded as the bit array
// followed by one byte holding k.
type bloom []byte

const (
	bloomBitsPerKey = 10
	bloomK          = 7
)

// bloomHash is 64-bit FNV-1a followed by the splitmix64 finalizer.
func bloomHash(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

func buildBloom(hashes []uint64) bloom {
	f := newBloom(len(hashes))
	for _, h := range hashes {
		f.add(h)
	}
	return f
}

// newBloom returns an empty filter sized for n keys (at least 64 bits).
func newBloom(n int) bloom {
	nbytes := (max(n*bloomBitsPerKey, 64) + 7) / 8
	f := make([]byte, nbytes+1)
	f[nbytes] = bloomK
	return f
}

// add adds the key of hash h to a filter made by newBloom.
func (f bloom) add(h uint64) {
	nbits := uint32(len(f)-1) * 8
	h1, h2 := uint32(h), uint32(h>>32)|1
	for i := uint32(0); i < bloomK; i++ {
		bit := (h1 + i*h2) % nbits
		f[bit/8] |= 1 << (bit % 8)
	}
}

// mayContain reports whether the key with hash h may be in the set. A
// malformed filter answers true (it can only cost a block read).
func (f bloom) mayContain(h uint64) bool {
	if len(f) < 2 {
		return true
	}
	k := uint32(f[len(f)-1])
	if k == 0 || k > 30 {
		return true
	}
	nbits := uint32(len(f)-1) * 8
	h1, h2 := uint32(h), uint32(h>>32)|1
	for i := uint32(0); i < k; i++ {
		bit := (h1 + i*h2) % nbits
		if f[bit/8]&(1<<(bit%8)) == 0 {
			return false
		}
	}
	return true
}
