// Package consumer runs durable consumer groups over any rewind.Store.
package consumer
