module github.com/llm4rec/llm4rec

go 1.26.8

require (
	github.com/daulet/tokenizers v1.22.1
	github.com/disintegration/imaging v1.6.2
	github.com/go-audio/audio v1.0.0
	github.com/go-audio/wav v1.1.0
	github.com/hashicorp/golang-lru/v2 v2.0.7
	github.com/yalue/onnxruntime_go v1.27.0
	gonum.org/v1/gonum v0.17.0
)

require (
	github.com/go-audio/riff v1.0.0 // indirect
	go.etcd.io/bbolt v1.5.0 // indirect
	golang.org/x/image v0.25.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
)
