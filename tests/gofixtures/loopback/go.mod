module loopback

go 1.25
