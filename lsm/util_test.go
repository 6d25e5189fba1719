package lsm

import "runtime"

func runtimeGosched() { runtime.Gosched() }
