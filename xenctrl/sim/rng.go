package sim

// splitmix advances the SplitMix64 generator whose state is *x and returns
// its next output. One uint64 of state makes vCPU contexts small.
func splitmix(x *uint64) uint64 {
	*x += 0x9e3779b97f4a7c15
	return mix64(*x)
}

// mix64 is SplitMix64's finaliser: a bijective scramble of x.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// rngSource adapts a SplitMix64 state to math/rand.Source64, so that
// math/rand's distributions draw from (and advance) a vCPU's own state.
type rngSource struct{ x *uint64 }

func (s rngSource) Int63() int64    { return int64(splitmix(s.x) >> 1) }
func (s rngSource) Uint64() uint64  { return splitmix(s.x) }
func (s rngSource) Seed(seed int64) { *s.x = uint64(seed) }
