-- Roles of the compose stack (deploy/compose.yaml), as `runstream stack up` makes them locally:
-- the services write as runstream_writer (owner of the schema), Grafana and the CLI read as
-- runstream_reader. Run once by the postgres image when its data volume is new.
CREATE ROLE runstream_writer LOGIN PASSWORD 'runstream-writer-local';
CREATE ROLE runstream_reader LOGIN PASSWORD 'runstream-reader-local';
ALTER DATABASE runstream OWNER TO runstream_writer;
\connect runstream
ALTER SCHEMA public OWNER TO runstream_writer;
GRANT USAGE ON SCHEMA public TO runstream_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE runstream_writer GRANT USAGE ON SCHEMAS TO runstream_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE runstream_writer GRANT SELECT ON TABLES TO runstream_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE runstream_writer GRANT SELECT ON SEQUENCES TO runstream_reader;
