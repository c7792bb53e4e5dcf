module github.com/raftkv/raftkv

go 1.26

require (
	github.com/HdrHistogram/hdrhistogram-go v1.1.2
	github.com/google/btree v1.1.3
	github.com/spf13/cobra v1.10.2
	github.com/spf13/pflag v1.0.9
)

require github.com/inconshreveable/mousetrap v1.1.0 // indirect
