"""Every bad input named: CSV files that are not UTF-8 (or not CSV) name the file and line."""

from __future__ import annotations

import pytest

from kvasir_ml.cli import main as cli_main
from kvasir_ml.data.sources import index_hyperkvasir

HEADER = "Video file,Organ,Finding,Classification\n"


@pytest.mark.parametrize("payload, message", [
    ((HEADER + "a1,Lower GI,polyps,pathological-findings\nb2,Lower GI,p\xf6lyps,x\n").encode("latin-1"),
     r"image-labels.csv: not UTF-8 text \(byte 0xf6 on line 3"),
    ((HEADER + "a1,Lower GI,polyps,x\n" + "z" * 200_000 + ",Lower GI,polyps,x\n").encode(),
     r"image-labels.csv:3: not readable as CSV \(field larger than field limit"),
])
def test_label_csv_that_is_not_utf8_or_not_csv_names_the_file_and_line(tmp_path, capsys, payload, message):
    labeled = tmp_path / "hk" / "labeled-images"
    labeled.mkdir(parents=True)
    (labeled / "image-labels.csv").write_bytes(payload)
    with pytest.raises(ValueError, match=message):
        index_hyperkvasir(tmp_path / "hk", workers=0)
    rc = cli_main(["data", "index", "hyperkvasir", str(tmp_path / "hk"), "--out", str(tmp_path / "hk.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "image-labels.csv" in err and "Traceback" not in err and not (tmp_path / "hk.json").exists()


def test_split_files_that_are_not_utf8_name_the_file(tmp_path, synth_dir, capsys):
    folds = tmp_path / "2_fold_split.csv"
    folds.write_bytes("file-name;class-name;split-index\nx.jpg;p\xf6lyps;0\n".encode("latin-1"))
    rc = cli_main(["data", "split", str(synth_dir / "annotations.coco.json"), "--out", str(tmp_path / "s.json"),
                   "--folds", str(folds)])
    assert rc == 2 and f"{folds}: not UTF-8 text (byte 0xf6 on line 2" in capsys.readouterr().err
