package bundle

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"
	"os"
)

// ReadFloat32s reads a raw array file of the bundle: exactly n little-endian float32 values,
// every one finite (item embeddings, similar-items weights).
func ReadFloat32s(path string, n int) ([]float32, error) {
	out, err := readArray[float32](path, n)
	if err != nil {
		return nil, err
	}
	for _, v := range out {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("bundle: %s: holds a non-finite value", path)
		}
	}
	return out, nil
}

// ReadInt32s reads a raw array file of the bundle: exactly n little-endian int32 values.
func ReadInt32s(path string, n int) ([]int32, error) {
	return readArray[int32](path, n)
}

func readArray[T float32 | int32](path string, n int) ([]T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != int64(4*n) {
		return nil, fmt.Errorf("bundle: %s: want exactly %d bytes (%d values of 4 bytes)", path, 4*n, n)
	}
	out := make([]T, n)
	if err := binary.Read(bufio.NewReader(f), binary.LittleEndian, out); err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", path, err)
	}
	return out, nil
}
