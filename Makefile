# pg_eventstore: built with PGXS.  The version lives in META.json only.
EXTENSION = pg_eventstore
EXTVERSION = $(shell sed -n 's/^   "version": "\(.*\)",/\1/p' META.json)

# One library from src/, a folder per subsystem (README: Layout); headers
# are included by their path below src/, e.g. "log/log.h".
MODULE_big = pg_eventstore
OBJS = $(patsubst %.c,%.o,$(wildcard src/*.c src/*/*.c))
PG_CPPFLAGS = -I$(srcdir)/src
# PGXS tracks no header dependencies here: rebuild everything on a header change
ES_HEADERS = $(wildcard src/*.h src/*/*.h)
# Warnings on; scripts/test.sh also makes them errors and turns assertions
# on (COPT), which a user's build need not.
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers

# The install script of the current version is built from the current
# schema, sql/$(EXTENSION).sql; the released install and upgrade scripts in
# sql/ are installed as they are.
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA = $(filter-out $(DATA_built),$(wildcard sql/$(EXTENSION)--*.sql))

# pg_regress (exact output, expected/ at the top level) and isolation specs,
# each on a temporary instance with the library preloaded, as in production.
TESTS = $(sort $(basename $(notdir $(wildcard test/sql/*.sql))))
REGRESS = $(TESTS)
REGRESS_OPTS = --inputdir=test --temp-instance=./tmp_check_regress --temp-config=test/pg_eventstore.conf
ISOLATION = $(sort $(basename $(notdir $(wildcard test/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test --temp-instance=./tmp_check_iso --temp-config=test/pg_eventstore.conf

# pgTAP files (behaviour, by plan), run by pg_prove on a temporary instance
# with the library preloaded (test/run_pgtap.sh).
PGTAP_TESTS = $(sort $(wildcard test/pgtap/*.sql))

# TAP tests (PostgreSQL::Test::Cluster) for crashes and restarts.
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))

EXTRA_CLEAN = tmp_check tmp_check_regress tmp_check_iso tmp_check_pgtap results output_iso regression.* installcheck.log

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The control file's default_version and the version META.json's provides
# gives the extension must match META.json's version.
CONTROL_VERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)
ifneq ($(CONTROL_VERSION),$(EXTVERSION))
$(error $(EXTENSION).control says $(CONTROL_VERSION) but META.json says $(EXTVERSION))
endif
PROVIDES_VERSION = $(shell sed -n '/"provides"/,/}/s/^ *"version": "\(.*\)".*/\1/p' META.json)
ifneq ($(PROVIDES_VERSION),$(EXTVERSION))
$(error META.json's provides says $(PROVIDES_VERSION) but its version is $(EXTVERSION))
endif

$(OBJS): $(ES_HEADERS)

$(DATA_built): sql/$(EXTENSION).sql
	cp $< $@

# pg_isolation_regress writes into output_iso and looks for expected output
# there before its input directory: point it at the top-level expected/.
installcheck: output_iso/expected
output_iso/expected:
	mkdir -p output_iso
	ln -sfn ../expected output_iso/expected

# The TAP tests' shared module, test/perl/EventstoreTest.pm (prove runs
# from the top of the tree; PGXS sets PG_PROVE_FLAGS, so add to it here).
PG_PROVE_FLAGS += -I test/perl

# The pgTAP files first, then PGXS's pg_regress, isolation and TAP runs.
installcheck: installcheck-pgtap
installcheck-pgtap:
	test/run_pgtap.sh '$(bindir)' tmp_check_pgtap $(PGTAP_TESTS)
.PHONY: installcheck-pgtap

# make dist: the PGXN archive $(DIST).zip of HEAD's tracked files under one
# top directory $(DIST)/, with the current version's install script (what
# META.json's provides names, built here from HEAD's sql/$(EXTENSION).sql)
# added, written into DISTDIR (default: here).  Needs a git checkout.
DIST = $(EXTENSION)-$(EXTVERSION)
DISTDIR ?= .
DIST_SQL = $(abspath $(DISTDIR))/$(DIST).tmp/$(EXTENSION)--$(EXTVERSION).sql
dist:
	rm -rf $(dir $(DIST_SQL)) $(DISTDIR)/$(DIST).zip
	mkdir -p $(dir $(DIST_SQL))
	git -C $(srcdir) show HEAD:sql/$(EXTENSION).sql >$(DIST_SQL)
	git -C $(srcdir) archive --format=zip --prefix=$(DIST)/sql/ --add-file=$(DIST_SQL) \
		--prefix=$(DIST)/ -o $(abspath $(DISTDIR))/$(DIST).zip HEAD
	rm -rf $(dir $(DIST_SQL))
.PHONY: dist
