package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/server"
)

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg server.Config
	cfg.RegisterFlags(fs)
	configFile := fs.String("config", "", "JSON config file (flags and LLM4REC_* environment variables win over it)")
	ortLib := fs.String("ort-lib", "", "path of libonnxruntime.so (default: $ORT_LIB, else the install of make deps)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	fail := func(err error) int {
		logger.Error("serve", "err", err)
		return 1
	}
	if *configFile != "" {
		if err := cfg.LoadFile(*configFile); err != nil {
			return fail(err)
		}
	}
	if err := cfg.LoadEnv(os.Getenv); err != nil {
		return fail(err)
	}
	if err := cfg.ApplyFlags(fs); err != nil {
		return fail(err)
	}
	cfg = cfg.WithDefaults()
	provider, err := ort.ParseProvider(cfg.Provider)
	if err != nil {
		return fail(err)
	}
	rt, err := ort.Open(ort.Options{LibraryPath: *ortLib, Provider: provider, IntraOpThreads: cfg.ORTIntraOpThreads(), CUDATF32: cfg.CUDATF32, Logger: logger})
	if err != nil {
		return fail(err)
	}
	defer rt.Close()
	srv, err := server.New(cfg, rt, logger)
	if err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		srv.Shutdown()
		return fail(fmt.Errorf("listen %s: %w", cfg.Addr, err))
	}
	logger.Info("serving", "addr", ln.Addr().String(), "bundle", cfg.Bundle, "data_dir", cfg.DataDir, "provider", rt.Provider())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case s := <-sig:
		logger.Info("shutting down", "signal", s.String())
	case err := <-served:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return fail(err)
		}
	}
	if err := srv.Shutdown(); err != nil {
		return fail(err)
	}
	logger.Info("stopped cleanly")
	return 0
}
