// Package engine is the LLM4Rec inference engine. Its subpackages: ort (the ONNX Runtime
// runtime, the only user of onnxruntime_go), tokenizer (the only user of the Hugging Face
// tokenizers binding), preprocess (image and audio decoding into tensors) and bundle (model
// bundles and their manifests).
package engine

// Version is the engine's version. Release builds set it with
// -ldflags "-X github.com/llm4rec/llm4rec/engine.Version=..." (the Makefile uses git describe).
var Version = "0.1.0-dev"
