package pgtest

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestNewDatabaseAcceptsItsOwnerByURLKeywordValueAndSocket(t *testing.T) {
	db := Shared(t).NewDatabase(t)
	for _, dsn := range []string{db.URL(), db.KeywordValue(), db.SocketKeywordValue()} {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		var who string
		if err := c.QueryRow(context.Background(), "select current_user").Scan(&who); err != nil || who != db.User {
			t.Fatalf("current_user = %q, %v; want %q", who, err, db.User)
		}
		c.Close(context.Background())
	}
}

func TestWrongPasswordIsRefused(t *testing.T) {
	db := Shared(t).NewDatabase(t)
	db.Password = "wrong"
	if c, err := pgx.Connect(context.Background(), db.URL()); err == nil {
		c.Close(context.Background())
		t.Fatal("connected with a wrong password: password authentication is not enforced")
	}
}
