//! Darknet's dataset files, read in one place with one policy: the `.data` file (`read_data_cfg`,
//! src/option_list.c), image lists (`get_paths`, src/data.c), class names (`get_labels_custom`), label files
//! (`read_boxes`, src/data.c) and the image → label path rule (`replace_image_to_label`, src/utils.c).
//! Evaluation ([`crate::eval`]), anchors ([`crate::anchors`]), the augmentation pipeline ([`crate::data`]) and
//! training ([`crate::train`]) all read their datasets through this module; it imports nothing from the crate.
//!
//! # The policy
//!
//! * **`.data` file**: every line stripped of all whitespace; blank, `#` and `;` lines skipped; the other lines
//!   must be `key=value` (an error naming file:line, where Darknet warns); the first occurrence of a key wins
//!   (`option_find`). Defaults as `train_detector`: `train` = `data/train.txt`, `valid` = the train list,
//!   `names` = `data/names.list` (`calc_anchors` defaults `train` to `data/train.list`; we use one default).
//! * **Which file is a `.data` file**: one whose extension is `.data`, or whose first non-blank line that is
//!   not a `#`/`;` comment contains `=`. Anything else is an image list.
//! * **Lists** (images, names): one entry per line, a trailing `\r` removed (`fgetl`); lines that are empty
//!   or only whitespace are skipped (Darknet keeps them and then fails to open the image ""). No comments.
//! * **Relative paths** are tried, in order: as given, i.e. relative to the working directory (what Darknet
//!   does); relative to the folder of the `.data` file the list came from (Darknet's layout, where one root
//!   holds `obj.data`, `train.txt` and `obj/`); relative to the folder of the file that names them (the list
//!   for images and labels, the `.data` file for lists and names). The first that exists wins; when none
//!   exists the path as given is kept, so the error names what the file says.
//! * **Label file**: `replace_image_to_label` of the image path *as written in the list* (the same string
//!   seeds Darknet's track ids), resolved like the image. A **missing label file means "no objects"** (as
//!   Darknet, which prints "Can't open label file"): readers return the missing files to the caller
//!   ([`ImageList::missing_labels`], [`read_labels`] gives `None`) and the command line prints the warning.
//! * **Label lines**: every non-blank line is exactly `class xc yc w h`; the class an integer in
//!   `0..classes` when the class count is known, the four numbers finite `f32`. Anything else is an error
//!   naming file:line ([`DatasetError`]); Darknet's `fscanf` loop would stop silently there or index out of
//!   bounds. Range checks that belong to one use (anchors need `w, h > 0`) stay with that use.

mod data_cfg;
mod error;
mod labels;
mod list;

pub use data_cfg::{is_data_file, DataCfg};
pub use error::{DatasetError, DatasetErrorKind};
pub use labels::{parse_labels, read_labels, replace_image_to_label, LabelBox};
pub use list::{read_list, read_names, resolve_in, ImageList, Resolver};
