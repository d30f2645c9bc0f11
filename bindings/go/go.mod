module github.com/evstore/evstore/bindings/go

go 1.23
