module fwatchdog

go 1.25
