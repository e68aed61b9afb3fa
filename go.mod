module github.com/xenmig/xenmig

go 1.26.8
